from services.intake.wiring import main

main()
