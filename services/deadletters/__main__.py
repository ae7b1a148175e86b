from services.deadletters.wiring import main

main()
